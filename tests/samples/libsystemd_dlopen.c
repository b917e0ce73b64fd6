/*
 * libsystemd_dlopen.c - the layerhound project's own stand-in for a libsystemd
 * that loads liblzma only on demand, via dlopen() (as systemd >= 256 does),
 * instead of listing it in DT_NEEDED. Built by the tests as libsystemd.so.0 to
 * check that reachability does not count a dlopen-only dependency: the
 * implant's IFUNC resolvers run while ld.so maps DT_NEEDED libraries at
 * start-up, before any dlopen could happen.
 */
#include <dlfcn.h>
#include <stddef.h>

int sd_notify(int unset_environment, const char *state)
{
	(void)unset_environment;
	(void)state;
	return 0;
}

int sd_journal_compress_with_lzma(void)
{
	void *handle = dlopen("liblzma.so.5", RTLD_NOW | RTLD_LOCAL);
	if (handle == NULL)
		return -1;
	dlclose(handle);
	return 0;
}
