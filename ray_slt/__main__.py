import sys

from ray_slt.cli import main

sys.exit(main())
