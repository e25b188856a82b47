import sys

from treesearch.selfplay.run import main

sys.exit(main())
