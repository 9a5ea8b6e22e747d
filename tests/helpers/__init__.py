"""What the tests share: a project on disk, waiting, and the real daemon, preview and systemd
they drive. Test modules import from here, never from one another."""
