"""The per-session unix-socket server shell: what the model proxy, the egress broker
and the doorbell share, and nothing they do with a connection.

* :mod:`.unix`: bind a session's socket in a directory only the host controls, and
  remove it only while it is still the one this process bound;
* :mod:`.serving`: the serve/stop mailbox, one session socket's lifecycle and the
  bounded, paced accept loop;
* :mod:`.http`: the server side of one HTTP/1.1 connection, parsed by h11.
"""
