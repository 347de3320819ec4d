from truckctl.cli.app import main

main()
