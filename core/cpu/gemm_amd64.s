//go:build amd64 && !purego

#include "textflag.h"

// func sgemm6x16AVX2(kc int, a, b, c *float32, ldc int, acc int)
//
// Y0..Y11 hold the 6x16 tile (row r in Y(2r), Y(2r+1)). Per k: load the 16 floats of the B panel into
// Y12, Y13, broadcast each of the 6 A values in turn (Y14, Y15 alternating) and fuse-multiply-add.
TEXT ·sgemm6x16AVX2(SB), NOSPLIT, $0-48
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8 // row stride in bytes
	MOVQ acc+40(FP), R9

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

loop:
	VMOVUPS      (DI), Y12
	VMOVUPS      32(DI), Y13
	VBROADCASTSS (SI), Y14
	VFMADD231PS  Y12, Y14, Y0
	VFMADD231PS  Y13, Y14, Y1
	VBROADCASTSS 4(SI), Y15
	VFMADD231PS  Y12, Y15, Y2
	VFMADD231PS  Y13, Y15, Y3
	VBROADCASTSS 8(SI), Y14
	VFMADD231PS  Y12, Y14, Y4
	VFMADD231PS  Y13, Y14, Y5
	VBROADCASTSS 12(SI), Y15
	VFMADD231PS  Y12, Y15, Y6
	VFMADD231PS  Y13, Y15, Y7
	VBROADCASTSS 16(SI), Y14
	VFMADD231PS  Y12, Y14, Y8
	VFMADD231PS  Y13, Y14, Y9
	VBROADCASTSS 20(SI), Y15
	VFMADD231PS  Y12, Y15, Y10
	VFMADD231PS  Y13, Y15, Y11
	ADDQ         $24, SI
	ADDQ         $64, DI
	DECQ         CX
	JNZ          loop

	TESTQ R9, R9
	JZ    store

	VADDPS (DX), Y0, Y0
	VADDPS 32(DX), Y1, Y1
	VMOVUPS Y0, (DX)
	VMOVUPS Y1, 32(DX)
	ADDQ    R8, DX
	VADDPS (DX), Y2, Y2
	VADDPS 32(DX), Y3, Y3
	VMOVUPS Y2, (DX)
	VMOVUPS Y3, 32(DX)
	ADDQ    R8, DX
	VADDPS (DX), Y4, Y4
	VADDPS 32(DX), Y5, Y5
	VMOVUPS Y4, (DX)
	VMOVUPS Y5, 32(DX)
	ADDQ    R8, DX
	VADDPS (DX), Y6, Y6
	VADDPS 32(DX), Y7, Y7
	VMOVUPS Y6, (DX)
	VMOVUPS Y7, 32(DX)
	ADDQ    R8, DX
	VADDPS (DX), Y8, Y8
	VADDPS 32(DX), Y9, Y9
	VMOVUPS Y8, (DX)
	VMOVUPS Y9, 32(DX)
	ADDQ    R8, DX
	VADDPS (DX), Y10, Y10
	VADDPS 32(DX), Y11, Y11
	VMOVUPS Y10, (DX)
	VMOVUPS Y11, 32(DX)
	VZEROUPPER
	RET

store:
	VMOVUPS Y0, (DX)
	VMOVUPS Y1, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y2, (DX)
	VMOVUPS Y3, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y4, (DX)
	VMOVUPS Y5, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y6, (DX)
	VMOVUPS Y7, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y8, (DX)
	VMOVUPS Y9, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y10, (DX)
	VMOVUPS Y11, 32(DX)
	VZEROUPPER
	RET

// func sgemm6x32AVX512(kc int, a, b, c *float32, ldc int, acc int)
//
// Z0..Z11 hold the 6x32 tile (row r: columns 0..15 in Z(2r), from the first B panel at DI, columns 16..31
// in Z(2r+1), from the second at R10 = DI + kc*64). Per k: one 16-float row of each panel, each of the 6
// A values broadcast in turn, 12 fused multiply-adds in the order of sgemm6x16AVX2.
TEXT ·sgemm6x32AVX512(SB), NOSPLIT, $0-48
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8 // row stride in bytes
	MOVQ acc+40(FP), R9
	MOVQ CX, R10
	SHLQ $6, R10
	ADDQ DI, R10 // second panel: kc*16 floats on

	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	VXORPS Z4, Z4, Z4
	VXORPS Z5, Z5, Z5
	VXORPS Z6, Z6, Z6
	VXORPS Z7, Z7, Z7
	VXORPS Z8, Z8, Z8
	VXORPS Z9, Z9, Z9
	VXORPS Z10, Z10, Z10
	VXORPS Z11, Z11, Z11

loop512:
	VMOVUPS      (DI), Z12
	VMOVUPS      (R10), Z13
	VBROADCASTSS (SI), Z14
	VFMADD231PS  Z12, Z14, Z0
	VFMADD231PS  Z13, Z14, Z1
	VBROADCASTSS 4(SI), Z15
	VFMADD231PS  Z12, Z15, Z2
	VFMADD231PS  Z13, Z15, Z3
	VBROADCASTSS 8(SI), Z16
	VFMADD231PS  Z12, Z16, Z4
	VFMADD231PS  Z13, Z16, Z5
	VBROADCASTSS 12(SI), Z17
	VFMADD231PS  Z12, Z17, Z6
	VFMADD231PS  Z13, Z17, Z7
	VBROADCASTSS 16(SI), Z18
	VFMADD231PS  Z12, Z18, Z8
	VFMADD231PS  Z13, Z18, Z9
	VBROADCASTSS 20(SI), Z19
	VFMADD231PS  Z12, Z19, Z10
	VFMADD231PS  Z13, Z19, Z11
	ADDQ         $24, SI
	ADDQ         $64, DI
	ADDQ         $64, R10
	DECQ         CX
	JNZ          loop512

	TESTQ R9, R9
	JZ    store512

#define ACC2(LO, HI) \
	VADDPS  (DX), LO, LO   \
	VADDPS  64(DX), HI, HI \
	VMOVUPS LO, (DX)       \
	VMOVUPS HI, 64(DX)     \
	ADDQ    R8, DX

	ACC2(Z0, Z1)
	ACC2(Z2, Z3)
	ACC2(Z4, Z5)
	ACC2(Z6, Z7)
	ACC2(Z8, Z9)
	ACC2(Z10, Z11)
	VZEROUPPER
	RET

store512:
#define STORE2(LO, HI) \
	VMOVUPS LO, (DX)   \
	VMOVUPS HI, 64(DX) \
	ADDQ    R8, DX

	STORE2(Z0, Z1)
	STORE2(Z2, Z3)
	STORE2(Z4, Z5)
	STORE2(Z6, Z7)
	STORE2(Z8, Z9)
	STORE2(Z10, Z11)
	VZEROUPPER
	RET

DATA iota8<>+0(SB)/4, $0
DATA iota8<>+4(SB)/4, $1
DATA iota8<>+8(SB)/4, $2
DATA iota8<>+12(SB)/4, $3
DATA iota8<>+16(SB)/4, $4
DATA iota8<>+20(SB)/4, $5
DATA iota8<>+24(SB)/4, $6
DATA iota8<>+28(SB)/4, $7
GLOBL iota8<>(SB), RODATA|NOPTR, $32

// One byte position of the 8 gathered words in SRC: sign-extend byte b (shift left by 24-8b, then
// arithmetically right by 24), convert to float, scale, store 8 floats at OFF(DI).
#define DEQ8(SRC, SHL, SCALE, OFF) \
	VPSLLD    $SHL, SRC, Y2 \
	VPSRAD    $24, Y2, Y2   \
	VCVTDQ2PS Y2, Y2        \
	VMULPS    SCALE, Y2, Y2 \
	VMOVUPS   Y2, OFF(DI)

// func dequantPanelInt8AVX2(words int, codes *uint32, wpr int, scales *float32, nb int, panel *float32)
//
// Writes 16 rows x 4*words int8 codes, dequantized, as a [4*words][16] panel. codes points at word k0/4
// of the first row (rows wpr words apart), scales at block k0/32 of the first row (rows nb apart); k0 is a
// multiple of 32. Each gather reads one word (4 codes) of 8 rows.
TEXT ·dequantPanelInt8AVX2(SB), NOSPLIT, $0-48
	MOVQ words+0(FP), CX
	MOVQ codes+8(FP), SI
	MOVQ wpr+16(FP), R8
	MOVQ scales+24(FP), R9
	MOVQ nb+32(FP), R10
	MOVQ panel+40(FP), DI

	// Y15: word offsets of rows 0..7 (r*wpr); Y14: scale offsets (r*nb).
	MOVQ         R8, X15
	VPBROADCASTD X15, Y15
	VPMULLD      iota8<>(SB), Y15, Y15
	MOVQ         R10, X14
	VPBROADCASTD X14, Y14
	VPMULLD      iota8<>(SB), Y14, Y14
	SHLQ         $5, R8  // bytes from row 0 to row 8 of codes: 8*wpr*4
	SHLQ         $5, R10 // same for scales
	XORQ         R12, R12 // words done in the current block of 8

	TESTQ CX, CX
	JZ    done

loop:
	TESTQ R12, R12
	JNZ   codes
	// New block: scales of rows 0..7 in Y12, rows 8..15 in Y13.
	VPCMPEQD   Y11, Y11, Y11
	VGATHERDPS Y11, (R9)(Y14*4), Y12
	LEAQ       (R9)(R10*1), R11
	VPCMPEQD   Y11, Y11, Y11
	VGATHERDPS Y11, (R11)(Y14*4), Y13
	ADDQ       $4, R9

codes:
	VPCMPEQD   Y11, Y11, Y11
	VPGATHERDD Y11, (SI)(Y15*4), Y0
	LEAQ       (SI)(R8*1), R11
	VPCMPEQD   Y11, Y11, Y11
	VPGATHERDD Y11, (R11)(Y15*4), Y1

	DEQ8(Y0, 24, Y12, 0)
	DEQ8(Y1, 24, Y13, 32)
	DEQ8(Y0, 16, Y12, 64)
	DEQ8(Y1, 16, Y13, 96)
	DEQ8(Y0, 8, Y12, 128)
	DEQ8(Y1, 8, Y13, 160)
	DEQ8(Y0, 0, Y12, 192)
	DEQ8(Y1, 0, Y13, 224)

	ADDQ $4, SI
	ADDQ $256, DI
	INCQ R12
	ANDQ $7, R12
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

// TRANSPOSE8 transposes the 8x8 block of floats in Y0-Y7 (row r in Yr) into Y8-Y15 (column k in
// Y(8+k)); clobbers Y0-Y7.
#define TRANSPOSE8 \
	VUNPCKLPS  Y1, Y0, Y8        \
	VUNPCKHPS  Y1, Y0, Y9        \
	VUNPCKLPS  Y3, Y2, Y10       \
	VUNPCKHPS  Y3, Y2, Y11       \
	VUNPCKLPS  Y5, Y4, Y12       \
	VUNPCKHPS  Y5, Y4, Y13       \
	VUNPCKLPS  Y7, Y6, Y14       \
	VUNPCKHPS  Y7, Y6, Y15       \
	VSHUFPS    $0x44, Y10, Y8, Y0 \
	VSHUFPS    $0xEE, Y10, Y8, Y1 \
	VSHUFPS    $0x44, Y11, Y9, Y2 \
	VSHUFPS    $0xEE, Y11, Y9, Y3 \
	VSHUFPS    $0x44, Y14, Y12, Y4 \
	VSHUFPS    $0xEE, Y14, Y12, Y5 \
	VSHUFPS    $0x44, Y15, Y13, Y6 \
	VSHUFPS    $0xEE, Y15, Y13, Y7 \
	VPERM2F128 $0x20, Y4, Y0, Y8 \
	VPERM2F128 $0x20, Y5, Y1, Y9 \
	VPERM2F128 $0x20, Y6, Y2, Y10 \
	VPERM2F128 $0x20, Y7, Y3, Y11 \
	VPERM2F128 $0x31, Y4, Y0, Y12 \
	VPERM2F128 $0x31, Y5, Y1, Y13 \
	VPERM2F128 $0x31, Y6, Y2, Y14 \
	VPERM2F128 $0x31, Y7, Y3, Y15

// STORE8(off) writes Y8-Y15 to the panel rows k = 0..7 (64 bytes apart) at byte offset off of DI.
#define STORE8(off) \
	VMOVUPS Y8, (0+off)(DI)    \
	VMOVUPS Y9, (64+off)(DI)   \
	VMOVUPS Y10, (128+off)(DI) \
	VMOVUPS Y11, (192+off)(DI) \
	VMOVUPS Y12, (256+off)(DI) \
	VMOVUPS Y13, (320+off)(DI) \
	VMOVUPS Y14, (384+off)(DI) \
	VMOVUPS Y15, (448+off)(DI)

// func pack16AVX2(blocks int, src *float32, ld int, dst *float32)
//
// Writes the B panel of 16 rows (row r at src + r*ld floats) over 8*blocks values of k: dst[k*16 + r] =
// row r's value k, 8 values of k at a time (two 8x8 transposes in registers).
TEXT ·pack16AVX2(SB), NOSPLIT, $0-32
	MOVQ blocks+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), BX
	MOVQ dst+24(FP), DI
	SHLQ $2, BX                  // row stride in bytes
	LEAQ (BX)(BX*2), DX          // 3 rows
	TESTQ CX, CX
	JZ   pdone

ploop:
	LEAQ    (SI)(BX*4), R10      // row 4
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(BX*1), Y1
	VMOVUPS (SI)(BX*2), Y2
	VMOVUPS (SI)(DX*1), Y3
	VMOVUPS (R10), Y4
	VMOVUPS (R10)(BX*1), Y5
	VMOVUPS (R10)(BX*2), Y6
	VMOVUPS (R10)(DX*1), Y7
	TRANSPOSE8
	STORE8(0)
	LEAQ    (R10)(BX*4), R12     // row 8
	LEAQ    (R12)(BX*4), R13     // row 12
	VMOVUPS (R12), Y0
	VMOVUPS (R12)(BX*1), Y1
	VMOVUPS (R12)(BX*2), Y2
	VMOVUPS (R12)(DX*1), Y3
	VMOVUPS (R13), Y4
	VMOVUPS (R13)(BX*1), Y5
	VMOVUPS (R13)(BX*2), Y6
	VMOVUPS (R13)(DX*1), Y7
	TRANSPOSE8
	STORE8(32)
	ADDQ    $32, SI
	ADDQ    $512, DI
	DECQ    CX
	JNZ     ploop

pdone:
	VZEROUPPER
	RET

// One nibble position of the 8 gathered words in SRC: sign-extend nibble j (shift left by 28-4j, then
// arithmetically right by 28), convert to float, scale, store 8 floats at OFF(DI).
#define DEQ4(SRC, SHL, SCALE, OFF) \
	VPSLLD    $SHL, SRC, Y2 \
	VPSRAD    $28, Y2, Y2   \
	VCVTDQ2PS Y2, Y2        \
	VMULPS    SCALE, Y2, Y2 \
	VMOVUPS   Y2, OFF(DI)

// func dequantPanelInt4AVX2(words int, codes *uint32, wpr int, scales *float32, nb int, panel *float32)
//
// dequantPanelInt8AVX2 for int4 codes: 16 rows x 8*words codes as a [8*words][16] panel; a word holds 8
// codes (nibble j is value j), a block of 32 values is 4 words.
TEXT ·dequantPanelInt4AVX2(SB), NOSPLIT, $0-48
	MOVQ words+0(FP), CX
	MOVQ codes+8(FP), SI
	MOVQ wpr+16(FP), R8
	MOVQ scales+24(FP), R9
	MOVQ nb+32(FP), R10
	MOVQ panel+40(FP), DI

	MOVQ         R8, X15
	VPBROADCASTD X15, Y15
	VPMULLD      iota8<>(SB), Y15, Y15
	MOVQ         R10, X14
	VPBROADCASTD X14, Y14
	VPMULLD      iota8<>(SB), Y14, Y14
	SHLQ         $5, R8
	SHLQ         $5, R10
	XORQ         R12, R12 // words done in the current block of 4

	TESTQ CX, CX
	JZ    done4

loop4:
	TESTQ R12, R12
	JNZ   codes4
	VPCMPEQD   Y11, Y11, Y11
	VGATHERDPS Y11, (R9)(Y14*4), Y12
	LEAQ       (R9)(R10*1), R11
	VPCMPEQD   Y11, Y11, Y11
	VGATHERDPS Y11, (R11)(Y14*4), Y13
	ADDQ       $4, R9

codes4:
	VPCMPEQD   Y11, Y11, Y11
	VPGATHERDD Y11, (SI)(Y15*4), Y0
	LEAQ       (SI)(R8*1), R11
	VPCMPEQD   Y11, Y11, Y11
	VPGATHERDD Y11, (R11)(Y15*4), Y1

	DEQ4(Y0, 28, Y12, 0)
	DEQ4(Y1, 28, Y13, 32)
	DEQ4(Y0, 24, Y12, 64)
	DEQ4(Y1, 24, Y13, 96)
	DEQ4(Y0, 20, Y12, 128)
	DEQ4(Y1, 20, Y13, 160)
	DEQ4(Y0, 16, Y12, 192)
	DEQ4(Y1, 16, Y13, 224)
	DEQ4(Y0, 12, Y12, 256)
	DEQ4(Y1, 12, Y13, 288)
	DEQ4(Y0, 8, Y12, 320)
	DEQ4(Y1, 8, Y13, 352)
	DEQ4(Y0, 4, Y12, 384)
	DEQ4(Y1, 4, Y13, 416)
	DEQ4(Y0, 0, Y12, 448)
	DEQ4(Y1, 0, Y13, 480)

	ADDQ $4, SI
	ADDQ $512, DI
	INCQ R12
	ANDQ $3, R12
	DECQ CX
	JNZ  loop4

done4:
	VZEROUPPER
	RET
