{
  "targets": [
    {
      "target_name": "posix_sys",
      "sources": ["xlators/storage/posix/sys.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
