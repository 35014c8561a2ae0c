/* LD_PRELOAD shim for tests/test_transform.py: pthread_create fails with EAGAIN, as at a thread limit
   (RLIMIT_NPROC, a cgroup's pids.max), when called from any thread but the process's first. So the
   Data layer's prefetch thread, which the main thread starts, cannot start transform threads. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef int (*create_fn)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);

int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*), void* arg) {
  static create_fn real = NULL;
  if (real == NULL) real = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
  if (syscall(SYS_gettid) != getpid()) return EAGAIN;
  return real(thread, attr, start, arg);
}
