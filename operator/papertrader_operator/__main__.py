"""`python -m papertrader_operator [flags]` runs the operator; `python -m papertrader_operator crd` prints the CRD."""

from papertrader_operator.main import main

if __name__ == "__main__":
    main()
