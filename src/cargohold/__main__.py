from cargohold.cli import main

main()
