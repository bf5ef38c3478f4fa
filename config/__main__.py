from config.command import main

raise SystemExit(main())
