#define _GNU_SOURCE
#include "CSharedMemory.h"
#include <errno.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

int coffer_memfd_create(const char *name) {
#ifdef __linux__
    return memfd_create(name, MFD_CLOEXEC);
#else
    (void)name;
    errno = ENOSYS;
    return -1;
#endif
}
