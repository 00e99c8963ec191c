from stemlab.cli import main

raise SystemExit(main())
