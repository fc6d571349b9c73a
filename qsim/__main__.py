from qsim.cli import main

raise SystemExit(main())
