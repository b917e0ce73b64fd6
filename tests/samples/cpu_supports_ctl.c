/*
 * cpu_supports_ctl.c - CONTROL SAMPLE for layerhound's structural detector.
 *
 * The layerhound project's own code. An honest library with a GNU IFUNC
 * resolver that picks an implementation with __builtin_cpu_supports("avx2"),
 * the way ordinary software does. The resolver calls libgcc's
 * __cpu_indicator_init, which the link pulls in from libgcc.a as a local
 * function: "an IFUNC resolver calls a local function" is therefore true here,
 * and the detector must still call this library clean.
 *
 * -DWITH_DECOYS adds the implant's weaker, file-level traits on top (an
 * unused __tls_get_addr import, which also brings DT_NEEDED on ld-linux via
 * libc.so's linker script, and tens of KB of code without unwind
 * information): still no hook, still clean.
 */

#include <stddef.h>
#include <stdint.h>

typedef uint32_t (*sum_func)(const uint8_t *buf, size_t size);

static uint32_t sum_plain(const uint8_t *buf, size_t size)
{
	uint32_t total = 0;
	while (size--)
		total += *buf++;
	return total;
}

__attribute__((target("avx2"))) static uint32_t sum_avx2(const uint8_t *buf, size_t size)
{
	uint32_t total = 0;
	for (size_t i = 0; i < size; i++)
		total += buf[i];
	return total;
}

static sum_func resolve_sum(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") ? sum_avx2 : sum_plain;
}

__attribute__((visibility("default"), ifunc("resolve_sum")))
uint32_t ctl_sum(const uint8_t *buf, size_t size);

#ifdef WITH_DECOYS
extern void *__tls_get_addr(void *descriptor);
static void *(*const volatile ctl_tls_ref)(void *) __attribute__((used)) = __tls_get_addr;

__asm__(
	".pushsection .text\n"
	".p2align 4\n"
	".type ctl_table_code, @function\n"
	"ctl_table_code:\n"
	".rept 2048\n"
	"\taddl $0x7f4a7c15, %eax\n"
	"\trorl $7, %eax\n"
	"\txorl %eax, %ecx\n"
	"\timull $0x27d4eb2d, %ecx, %ecx\n"
	".endr\n"
	"\tmovl %ecx, %eax\n"
	"\tret\n"
	".size ctl_table_code, .-ctl_table_code\n"
	".popsection\n");
#endif
