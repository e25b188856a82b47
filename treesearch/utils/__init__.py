"""Small shared utilities (BOTTOM layer): atomic writes, run directories, recipes (omegaconf
loading), knob checks, model checkpoint paths, plots and estimators. Every other layer may
import them; they import nothing of the project above ``treesearch.utils``."""
