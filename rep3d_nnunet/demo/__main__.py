import sys

from rep3d_nnunet.demo.run import main

sys.exit(main())
