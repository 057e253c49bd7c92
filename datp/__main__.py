from datp.cli import main

raise SystemExit(main())
