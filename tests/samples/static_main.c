/*
 * static_main.c - INERT TEST MATERIAL: a program for a static link of
 * implant_sim.c (the layerhound project's own code), as a build that links
 * the backdoored liblzma objects statically into an executable would be.
 * It calls lzma_crc32 once, so the link keeps the IFUNC and its resolver.
 */

#include <stddef.h>
#include <stdint.h>

extern uint32_t lzma_crc32(const uint8_t *buf, size_t size, uint32_t crc);

int main(void)
{
    return (int)(lzma_crc32((const uint8_t *)"x", 1, 0) & 1);
}
