printf "HALLOWS-GDB thread %d\n", $_thread
frame
info line *$pc
kill
