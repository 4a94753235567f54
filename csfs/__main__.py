import sys

from csfs.main import main

sys.exit(main())
