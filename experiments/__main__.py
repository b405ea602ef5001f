from sparseshift.experiments.cli import main

raise SystemExit(main())
