#!/usr/bin/env python
"""Train / evaluate any bestie_d2 stage. See ``bestie_d2/tools/train_net.py`` and the README."""
from bestie_d2.tools.train_net import invoke_main

if __name__ == "__main__":
    invoke_main()
