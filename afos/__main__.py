import sys

from afos.cli import main

sys.exit(main())
