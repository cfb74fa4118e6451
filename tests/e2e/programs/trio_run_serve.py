"""`trio.run(dragon.serve)`, literally: a runtime until Ctrl-C."""

import trio

import dragon

trio.run(dragon.serve)
