from physgm.cli import main

main()
