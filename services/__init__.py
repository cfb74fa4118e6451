"""The runtime's three actors (launcher, Local Services, Global Services). Installed as `dragon.services`."""
