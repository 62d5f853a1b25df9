"""Run directories: the ``Run`` object, its typed records and files, the lock, and the search driver.

``rundir`` (``Run``: open, check, read and write a run directory), ``records`` (the log's lines and the
front's rows as types), ``files`` (durable text files), ``lock`` (one writer, Ctrl-C), ``driver`` (the
search loop; the only module here that loads the training stack).
"""
