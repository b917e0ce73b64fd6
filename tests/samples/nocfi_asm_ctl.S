/*
 * nocfi_asm_ctl.S - CONTROL SAMPLE for layerhound's structural detector.
 *
 * The layerhound project's own code. Hand-written assembly without any .cfi
 * directives, like the perlasm-generated parts of libcrypto: tens of KB of
 * .text that no .eh_frame entry covers. It has no IFUNC, imports nothing
 * unusual and writes no GOT slot. An unwind gap alone is common in honest
 * libraries, so the detector must call this library clean.
 *
 * ctl_mix_blocks(uint32_t *state, size_t blocks): mixes a 4-word state,
 * fully unrolled; plain arithmetic, no memory outside *state.
 */
	.text
	.globl	ctl_mix_blocks
	.type	ctl_mix_blocks, @function
	.p2align 5
ctl_mix_blocks:
	pushq	%rbx
	movl	(%rdi), %eax
	movl	4(%rdi), %ebx
	movl	8(%rdi), %ecx
	movl	12(%rdi), %edx
	testq	%rsi, %rsi
	jz	2f
1:
	.rept	2048
	addl	%ebx, %eax
	xorl	%eax, %edx
	roll	$16, %edx
	addl	%edx, %ecx
	xorl	%ecx, %ebx
	roll	$12, %ebx
	.endr
	decq	%rsi
	jnz	1b
2:
	movl	%eax, (%rdi)
	movl	%ebx, 4(%rdi)
	movl	%ecx, 8(%rdi)
	movl	%edx, 12(%rdi)
	popq	%rbx
	ret
	.size	ctl_mix_blocks, .-ctl_mix_blocks

	.section .note.GNU-stack,"",@progbits
