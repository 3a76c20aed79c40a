import CofferCLI

Coffer.main()
