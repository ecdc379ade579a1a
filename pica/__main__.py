import sys

from pica.cli.main import main

sys.exit(main())
