from modelport.cli.main import main

main()
