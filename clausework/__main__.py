from clausework.cli import main

main()
