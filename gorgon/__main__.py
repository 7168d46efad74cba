from gorgon._cli import main

raise SystemExit(main())
