import sys

from treesearch.study.run import main

sys.exit(main())
