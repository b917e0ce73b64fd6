/*
 * implant_sim.c - INERT TEST MATERIAL for layerhound's detector tests.
 *
 * This is the layerhound project's own code; it contains no code from the
 * xz backdoor or any other third party. It hooks nothing, patches nothing,
 * reads no environment and talks to no one. It only reproduces, for tests,
 * the shape and the byte patterns that public analyses of CVE-2024-3094
 * documented:
 *
 *   - a shared library exporting lzma_crc32 and lzma_crc64 as GNU IFUNC
 *     symbols, whose resolvers call a local, non-exported _get_cpuid helper
 *     (the hook point the implant used);
 *   - optionally, the published signature byte sequences, emitted as raw
 *     .byte data into .text by top-level asm blocks. Those bytes are never
 *     referenced or executed.
 *
 * Variants, chosen with preprocessor macros:
 *   (none)               structure only: IFUNC resolvers + _get_cpuid
 *   -DWITH_PROLOGUE      + the published _get_cpuid prologue bytes
 *   -DWITH_YARA          + all three opcode sequences of the public YARA rule
 *   -DWITH_YARA_PARTIAL  + only the first two of those sequences
 */

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

typedef uint32_t (*crc32_func)(const uint8_t *buf, size_t size, uint32_t crc);
typedef uint64_t (*crc64_func)(const uint8_t *buf, size_t size, uint64_t crc);

/*
 * Feature probe used by both resolvers; local, like the implant's hook point.
 * noclone keeps its symbol name intact (no _get_cpuid.constprop.0 clone).
 */
static __attribute__((noinline, noclone)) uint32_t _get_cpuid(uint32_t leaf)
{
#if defined(__x86_64__) || defined(__i386__)
	unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
	if (__get_cpuid(leaf, &eax, &ebx, &ecx, &edx))
		return ecx;
#else
	(void)leaf;
#endif
	return 0;
}

static uint32_t crc32_bitwise(const uint8_t *buf, size_t size, uint32_t crc)
{
	crc = ~crc;
	while (size--) {
		crc ^= *buf++;
		for (int i = 0; i < 8; i++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

/* Same result, different code: stands in for a CLMUL implementation. */
static uint32_t crc32_unrolled(const uint8_t *buf, size_t size, uint32_t crc)
{
	crc = ~crc;
	while (size--) {
		crc ^= *buf++;
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static uint64_t crc64_bitwise(const uint8_t *buf, size_t size, uint64_t crc)
{
	crc = ~crc;
	while (size--) {
		crc ^= *buf++;
		for (int i = 0; i < 8; i++)
			crc = (crc >> 1) ^ (0xC96C5795D7870F42ull & (0ull - (crc & 1ull)));
	}
	return ~crc;
}

static uint64_t crc64_unrolled(const uint8_t *buf, size_t size, uint64_t crc)
{
	crc = ~crc;
	while (size--) {
		crc ^= *buf++;
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			crc = (crc >> 1) ^ (0xC96C5795D7870F42ull & (0ull - (crc & 1ull)));
	}
	return ~crc;
}

#define ECX_PCLMUL (1u << 1)

static crc32_func resolve_crc32(void)
{
	return (_get_cpuid(1) & ECX_PCLMUL) ? crc32_unrolled : crc32_bitwise;
}

static crc64_func resolve_crc64(void)
{
	return (_get_cpuid(1) & ECX_PCLMUL) ? crc64_unrolled : crc64_bitwise;
}

__attribute__((visibility("default"), ifunc("resolve_crc32")))
uint32_t lzma_crc32(const uint8_t *buf, size_t size, uint32_t crc);

__attribute__((visibility("default"), ifunc("resolve_crc64")))
uint64_t lzma_crc64(const uint8_t *buf, size_t size, uint64_t crc);

/*
 * Signature bytes as inert data in .text. The wildcard bytes of the YARA
 * rule's first sequence are filled with zeros.
 */
#ifdef WITH_PROLOGUE
__asm__(
	".pushsection .text\n"
	".byte 0xf3,0x0f,0x1e,0xfa,0x55,0x48,0x89,0xf5,0x4c,0x89,0xce,0x53\n"
	".byte 0x89,0xfb,0x81,0xe7,0x00,0x00,0x00,0x80,0x48,0x83,0xec,0x28\n"
	".byte 0x48,0x89,0x54,0x24,0x18,0x48,0x89,0x4c,0x24,0x10\n"
	".popsection\n");
#endif

#if defined(WITH_YARA) || defined(WITH_YARA_PARTIAL)
__asm__(
	".pushsection .text\n"
	/* op1 */
	".byte 0x48,0x8d,0x7c,0x24,0x08,0xf3,0xab,0x48,0x8d,0x44,0x24,0x08\n"
	".byte 0x48,0x89,0xd1,0x4c,0x89,0xc7,0x48,0x89,0xc2,0xe8\n"
	".byte 0x00,0x00,0x00,0x00,0x89,0xc2\n"
	/* op2 */
	".byte 0x31,0xc0,0x49,0x89,0xff,0xb9,0x16,0x00,0x00,0x00,0x4d,0x89\n"
	".byte 0xc5,0x48,0x8d,0x7c,0x24,0x48,0x4d,0x89,0xce,0xf3,0xab,0x48\n"
	".byte 0x8d,0x44,0x24,0x48\n"
	".popsection\n");
#endif

#ifdef WITH_YARA
__asm__(
	".pushsection .text\n"
	/* op3 */
	".byte 0x4d,0x8b,0x6c,0x24,0x08,0x45,0x8b,0x3c,0x24,0x4c,0x8b,0x63\n"
	".byte 0x10,0x89,0x85,0x78,0xf1,0xff,0xff,0x31,0xc0,0x83,0xbd,0x78\n"
	".byte 0xf1,0xff,0xff,0x00,0xf3,0xab,0x79,0x07\n"
	".popsection\n");
#endif
