{
  "targets": [
    {
      "target_name": "posix_sys",
      "sources": ["xlators/storage/posix/sys.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "fuse_dev",
      "sources": ["src/fuse/kernel/dev.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "libraries": ["-lpthread"]
    }
  ]
}
