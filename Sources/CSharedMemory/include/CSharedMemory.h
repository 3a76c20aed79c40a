#ifndef COFFER_SHARED_MEMORY_H
#define COFFER_SHARED_MEMORY_H

/// An anonymous shared-memory file (memfd_create, close-on-exec), or -1 with errno set.
/// Swift's Glibc module does not export memfd_create.
int coffer_memfd_create(const char *name);

#endif
