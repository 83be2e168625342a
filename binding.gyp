{
  "targets": [
    {
      "target_name": "vmimg_native",
      "sources": ["native/vmimg_native.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
