from clausework.cli.commands import main

main()
