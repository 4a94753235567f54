"""csfs core: everything that touches CryoSPARC project directories on disk.

Never imports FUSE. The command line (`csfs`) and the mount (`mountpoints`) are thin
layers over the functions here.
"""
