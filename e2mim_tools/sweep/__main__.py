import sys

from e2mim_tools.sweep.cli import main

sys.exit(main())
