"""Helpers shared by the tests, and no tests of their own.

Where things are:

* ``tests/unit/``: one part at a time, by package (``agent/``, ``contract/``, ``egress/``,
  ``host/``, ``isolation/``, ``runtime/``; the CLI's tests at its top);
* ``tests/integration/``: parts together across real processes and files;
* ``tests/e2e/``: a whole control plane, driven through its API, its chat or its process;
* ``tests/channels/``: each chat platform end to end, one ``test_<platform>*.py`` family
  per platform (IRC's parts, its real-server wire and its end-to-end flows included);
* ``tests/sandbox/``: real OCI runtimes (runsc, runc, crun), skipped where absent;
* ``tests/security/``: hostile agents, files, rows and schemas, and the red team;
* ``tests/chaos/``: control-plane and agent kills;
* ``tests/fakes/``: stand-ins for what is out of reach (a chat platform, a model
  provider, an HTTPS upstream), each speaking the real protocol;
* ``tests/support/``: this package.

The helpers, by what they help with:

* ``events``: a recording event sink, and readers of a running plane's event bus;
* ``plane``: a dev control plane's configuration with a test's timers;
* ``api``: the plane with its HTTP API served on loopback;
* ``console``: that plane in a thread of its own, a relay that can cut its connections,
  and one headless chromium driven through the system chromedriver;
* ``channels``: the plane with chat platforms configured, and chats wired to the demo
  agent;
* ``irc``: an IRC adapter against a real ngircd;
* ``matrix_person``: a person on a real Synapse, talking to the bot;
* ``gateway``, ``delivery``, ``audit``, ``egress``: each actor on a real host.db, with
  stand-ins for its collaborators;
* ``agent``: the host side of a sandbox agent run as a process;
* ``ironctl``: ironctl against a fake API;
* ``sandbox``: which OCI runtimes are present, and a busybox rootfs to run;
* ``image``: the sealed image, built once per session (the ``sandbox_image`` fixture).
"""
