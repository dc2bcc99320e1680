import sys

from wazo_stt.cli import main

sys.exit(main())
