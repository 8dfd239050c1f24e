//go:build amd64 && !purego

#include "textflag.h"

// The matrix-vector kernels of Linear (gemv.go, gemv_amd64.go). All macros come before the first TEXT:
// go vet's asmdecl takes a macro's argument references (x+8(FP)) as the preceding function's.
//
// Kernels for 1..4 rows of x, one row of w at a time. Registers shared by the three:
//   SI, R8, R13, BX: rows 0..3 of x (rows past n are computed but never read)
//   R9: n, the rows of x (1..4); DX: the output of the current row of w for x row 0
//   AX: byte offset into the x rows; CX: its end (blocks*128)
//   Y8..Y11: the 32 weights of the current block, as float32
//   Y0..Y7: the sums, x row i in Y(2i) (lanes k%16 = 0..7) and Y(2i+1) (lanes 8..15)
//   R11: rows of w left

// Per x row: add the block's products to its two accumulators, first half then second half of the block
// (lane j of the 16 receives k%16 == j in increasing k). Rows past n are skipped.
#define GEMV_FMAS \
	VFMADD231PS (SI)(AX*1), Y8, Y0    \
	VFMADD231PS 32(SI)(AX*1), Y9, Y1  \
	VFMADD231PS 64(SI)(AX*1), Y10, Y0 \
	VFMADD231PS 96(SI)(AX*1), Y11, Y1 \
	CMPQ        R9, $2                \
	JLT         fmasdone              \
	VFMADD231PS (R8)(AX*1), Y8, Y2    \
	VFMADD231PS 32(R8)(AX*1), Y9, Y3  \
	VFMADD231PS 64(R8)(AX*1), Y10, Y2 \
	VFMADD231PS 96(R8)(AX*1), Y11, Y3 \
	CMPQ        R9, $3                \
	JLT         fmasdone              \
	VFMADD231PS (R13)(AX*1), Y8, Y4   \
	VFMADD231PS 32(R13)(AX*1), Y9, Y5 \
	VFMADD231PS 64(R13)(AX*1), Y10, Y4 \
	VFMADD231PS 96(R13)(AX*1), Y11, Y5 \
	CMPQ        R9, $4                \
	JLT         fmasdone              \
	VFMADD231PS (BX)(AX*1), Y8, Y6    \
	VFMADD231PS 32(BX)(AX*1), Y9, Y7  \
	VFMADD231PS 64(BX)(AX*1), Y10, Y6 \
	VFMADD231PS 96(BX)(AX*1), Y11, Y7 \
fmasdone:

// The spec's reduction of the 16 lanes in LO, HI to one float in the low lane of XLO (LO's X register):
// s = LO+HI (lanes i, i+8), t = low half + high half of s (i, i+4), then (t0+t2) + (t1+t3).
#define GEMV_REDUCE(LO, HI, XLO) \
	VADDPS       HI, LO, LO     \
	VEXTRACTF128 $1, LO, X12    \
	VADDPS       X12, XLO, XLO  \
	VMOVHLPS     XLO, XLO, X12  \
	VADDPS       X12, XLO, XLO  \
	VMOVSHDUP    XLO, X12       \
	VADDSS       X12, XLO, XLO

// Reduce and store the sums of the n rows of x at (DX), DX+ldy, ... (ldy, in bytes, in R10); clobbers AX.
#define GEMV_STORE \
	GEMV_REDUCE(Y0, Y1, X0)  \
	VMOVSS X0, (DX)          \
	CMPQ   R9, $2            \
	JLT    storedone         \
	GEMV_REDUCE(Y2, Y3, X2)  \
	VMOVSS X2, (DX)(R10*1)   \
	CMPQ   R9, $3            \
	JLT    storedone         \
	GEMV_REDUCE(Y4, Y5, X4)  \
	VMOVSS X4, (DX)(R10*2)   \
	CMPQ   R9, $4            \
	JLT    storedone         \
	GEMV_REDUCE(Y6, Y7, X6)  \
	LEAQ   (DX)(R10*2), AX   \
	VMOVSS X6, (AX)(R10*1)   \
storedone:

#define GEMV_ZERO \
	VXORPS Y0, Y0, Y0 \
	VXORPS Y1, Y1, Y1 \
	VXORPS Y2, Y2, Y2 \
	VXORPS Y3, Y3, Y3 \
	VXORPS Y4, Y4, Y4 \
	VXORPS Y5, Y5, Y5 \
	VXORPS Y6, Y6, Y6 \
	VXORPS Y7, Y7, Y7

// Load blocks (as bytes of x: blocks*128 into CX), the x row pointers, n, rows and y.
#define GEMV_ARGS(ROWS, Y) \
	MOVQ blocks+0(FP), CX     \
	SHLQ $7, CX               \
	MOVQ x+8(FP), SI          \
	MOVQ ldx+16(FP), R10      \
	LEAQ (SI)(R10*1), R8      \
	LEAQ (SI)(R10*2), R13     \
	LEAQ (R13)(R10*1), BX     \
	MOVQ n+24(FP), R9         \
	MOVQ ROWS, R11            \
	MOVQ Y, DX

// The kernels for one row of x (batch-1 decoding), four rows of w at a time: with one row of w the only
// independent sums are its two accumulators, each a chain of dependent fused multiply-adds, and the
// kernels were bound by that latency (the int8 and int4 ones well below the memory bandwidth). Four rows
// give eight chains. Each output is the same sum as in the kernels above. Registers:
//   SI: x; AX: byte offset into x; CX: its end (blocks*128)
//   Y0..Y7: the sums, row r of the group in Y(2r) (lanes k%16 = 0..7) and Y(2r+1) (lanes 8..15)
//   DX: the group's first output (4 floats); R11: groups of 4 rows left

// Add the products of the block of x with the 32 weights in Y8..Y11 to the sums A (lanes 0..7), B.
#define GEMV_FMA1(A, B) \
	VFMADD231PS (SI)(AX*1), Y8, A    \
	VFMADD231PS 32(SI)(AX*1), Y9, B  \
	VFMADD231PS 64(SI)(AX*1), Y10, A \
	VFMADD231PS 96(SI)(AX*1), Y11, B

// Reduce and store the 4 rows' sums at (DX).
#define GEMV_STORE4 \
	GEMV_REDUCE(Y0, Y1, X0) \
	VMOVSS X0, (DX)         \
	GEMV_REDUCE(Y2, Y3, X2) \
	VMOVSS X2, 4(DX)        \
	GEMV_REDUCE(Y4, Y5, X4) \
	VMOVSS X4, 8(DX)        \
	GEMV_REDUCE(Y6, Y7, X6) \
	VMOVSS X6, 12(DX)

// Load blocks, x, rows (as groups of 4) and y.
#define GEMV1_ARGS(ROWS, Y) \
	MOVQ blocks+0(FP), CX \
	SHLQ $7, CX           \
	MOVQ x+8(FP), SI      \
	MOVQ ROWS, R11        \
	SHRQ $2, R11          \
	MOVQ Y, DX

// Load the quantized kernels' rows: DI, R14: the group's first row of codes and of scales; R8, R13: the
// code row stride and 3 times it, R9, BX: the same for scales (all in bytes).
#define GEMV1_QARGS \
	MOVQ codes+16(FP), DI   \
	MOVQ wstride+24(FP), R8 \
	LEAQ (R8)(R8*2), R13    \
	MOVQ scales+32(FP), R14 \
	MOVQ sstride+40(FP), R9 \
	LEAQ (R9)(R9*2), BX

// func gemvF32AVX2(blocks int, x *float32, ldx, n int, w *float32, ldw, rows int, y *float32, ldy int)
TEXT ·gemvF32AVX2(SB), NOSPLIT, $0-72
	GEMV_ARGS(rows+48(FP), y+56(FP))
	MOVQ w+32(FP), DI

frow:
	GEMV_ZERO
	XORQ AX, AX

floop:
	VMOVUPS (DI)(AX*1), Y8
	VMOVUPS 32(DI)(AX*1), Y9
	VMOVUPS 64(DI)(AX*1), Y10
	VMOVUPS 96(DI)(AX*1), Y11
	GEMV_FMAS
	ADDQ    $128, AX
	CMPQ    AX, CX
	JLT     floop

	MOVQ ldy+64(FP), R10
	GEMV_STORE
	ADDQ ldw+40(FP), DI
	ADDQ $4, DX
	DECQ R11
	JNZ  frow
	VZEROUPPER
	RET

// func gemvInt8AVX2(blocks int, x *float32, ldx, n int, codes *uint32, wstride int, scales *float32, sstride, rows int, y *float32, ldy int)
//
// Per block: 32 bytes of codes (R10), sign-extended 8 at a time, converted and multiplied by the block's
// scale (R12): the dequantized weights, rounded as core.QuantHost.DequantizeRow rounds them.
TEXT ·gemvInt8AVX2(SB), NOSPLIT, $0-88
	GEMV_ARGS(rows+64(FP), y+72(FP))
	MOVQ codes+32(FP), DI
	MOVQ scales+48(FP), R14

i8row:
	GEMV_ZERO
	XORQ AX, AX
	MOVQ DI, R10
	MOVQ R14, R12

i8loop:
	VBROADCASTSS (R12), Y12
	VPMOVSXBD    (R10), Y8
	VPMOVSXBD    8(R10), Y9
	VPMOVSXBD    16(R10), Y10
	VPMOVSXBD    24(R10), Y11
	VCVTDQ2PS    Y8, Y8
	VCVTDQ2PS    Y9, Y9
	VCVTDQ2PS    Y10, Y10
	VCVTDQ2PS    Y11, Y11
	VMULPS       Y12, Y8, Y8
	VMULPS       Y12, Y9, Y9
	VMULPS       Y12, Y10, Y10
	VMULPS       Y12, Y11, Y11
	GEMV_FMAS
	ADDQ         $32, R10
	ADDQ         $4, R12
	ADDQ         $128, AX
	CMPQ         AX, CX
	JLT          i8loop

	MOVQ ldy+80(FP), R10
	GEMV_STORE
	ADDQ wstride+40(FP), DI
	ADDQ sstride+56(FP), R14
	ADDQ $4, DX
	DECQ R11
	JNZ  i8row
	VZEROUPPER
	RET

// Left shifts that bring nibble j of a word to the top (28-4j), so that an arithmetic right shift by 28
// sign-extends it: lane j of a broadcast word becomes code j.
DATA gemvShl4<>+0(SB)/4, $28
DATA gemvShl4<>+4(SB)/4, $24
DATA gemvShl4<>+8(SB)/4, $20
DATA gemvShl4<>+12(SB)/4, $16
DATA gemvShl4<>+16(SB)/4, $12
DATA gemvShl4<>+20(SB)/4, $8
DATA gemvShl4<>+24(SB)/4, $4
DATA gemvShl4<>+28(SB)/4, $0
GLOBL gemvShl4<>(SB), RODATA|NOPTR, $32

// One word of 8 int4 codes at OFF(R10) into DST as dequantized floats (scale in Y12, shifts in Y13).
#define GEMV_DEQ4(OFF, DST) \
	VPBROADCASTD OFF(R10), DST   \
	VPSLLVD      Y13, DST, DST   \
	VPSRAD       $28, DST, DST   \
	VCVTDQ2PS    DST, DST        \
	VMULPS       Y12, DST, DST

// func gemvInt4AVX2(blocks int, x *float32, ldx, n int, codes *uint32, wstride int, scales *float32, sstride, rows int, y *float32, ldy int)
//
// gemvInt8AVX2 for int4 codes: a block is 4 words (16 bytes) of 8 codes each.
TEXT ·gemvInt4AVX2(SB), NOSPLIT, $0-88
	GEMV_ARGS(rows+64(FP), y+72(FP))
	MOVQ    codes+32(FP), DI
	MOVQ    scales+48(FP), R14
	VMOVDQU gemvShl4<>(SB), Y13

i4row:
	GEMV_ZERO
	XORQ AX, AX
	MOVQ DI, R10
	MOVQ R14, R12

i4loop:
	VBROADCASTSS (R12), Y12
	GEMV_DEQ4(0, Y8)
	GEMV_DEQ4(4, Y9)
	GEMV_DEQ4(8, Y10)
	GEMV_DEQ4(12, Y11)
	GEMV_FMAS
	ADDQ         $16, R10
	ADDQ         $4, R12
	ADDQ         $128, AX
	CMPQ         AX, CX
	JLT          i4loop

	MOVQ ldy+80(FP), R10
	GEMV_STORE
	ADDQ wstride+40(FP), DI
	ADDQ sstride+56(FP), R14
	ADDQ $4, DX
	DECQ R11
	JNZ  i4row
	VZEROUPPER
	RET

// func gemv1x4F32AVX2(blocks int, x *float32, w *float32, ldw, rows int, y *float32)
//
// rows (a multiple of 4) rows of w, ldw bytes apart. DI: the group's first row, R10: it at offset AX;
// R8, R13: ldw, 3*ldw. The block of x is loaded once into Y8..Y11 and the weights are the memory
// operands of the multiply-adds.
TEXT ·gemv1x4F32AVX2(SB), NOSPLIT, $0-48
	GEMV1_ARGS(rows+32(FP), y+40(FP))
	MOVQ w+16(FP), DI
	MOVQ ldw+24(FP), R8
	LEAQ (R8)(R8*2), R13

f1row:
	GEMV_ZERO
	XORQ AX, AX

f1loop:
	VMOVUPS     (SI)(AX*1), Y8
	VMOVUPS     32(SI)(AX*1), Y9
	VMOVUPS     64(SI)(AX*1), Y10
	VMOVUPS     96(SI)(AX*1), Y11
	LEAQ        (DI)(AX*1), R10
	VFMADD231PS (R10), Y8, Y0
	VFMADD231PS 32(R10), Y9, Y1
	VFMADD231PS 64(R10), Y10, Y0
	VFMADD231PS 96(R10), Y11, Y1
	VFMADD231PS (R10)(R8*1), Y8, Y2
	VFMADD231PS 32(R10)(R8*1), Y9, Y3
	VFMADD231PS 64(R10)(R8*1), Y10, Y2
	VFMADD231PS 96(R10)(R8*1), Y11, Y3
	VFMADD231PS (R10)(R8*2), Y8, Y4
	VFMADD231PS 32(R10)(R8*2), Y9, Y5
	VFMADD231PS 64(R10)(R8*2), Y10, Y4
	VFMADD231PS 96(R10)(R8*2), Y11, Y5
	VFMADD231PS (R10)(R13*1), Y8, Y6
	VFMADD231PS 32(R10)(R13*1), Y9, Y7
	VFMADD231PS 64(R10)(R13*1), Y10, Y6
	VFMADD231PS 96(R10)(R13*1), Y11, Y7
	ADDQ        $128, AX
	CMPQ        AX, CX
	JLT         f1loop

	GEMV_STORE4
	LEAQ (DI)(R8*4), DI
	ADDQ $16, DX
	DECQ R11
	JNZ  f1row
	VZEROUPPER
	RET

// One row's block of 32 int8 codes (at C0, C8, C16, C24: 8 codes each) into Y8..Y11, dequantized with
// the scale at S.
#define GEMV_DEQ8ROW(C0, C8, C16, C24, S) \
	VBROADCASTSS S, Y12     \
	VPMOVSXBD    C0, Y8     \
	VPMOVSXBD    C8, Y9     \
	VPMOVSXBD    C16, Y10   \
	VPMOVSXBD    C24, Y11   \
	VCVTDQ2PS    Y8, Y8     \
	VCVTDQ2PS    Y9, Y9     \
	VCVTDQ2PS    Y10, Y10   \
	VCVTDQ2PS    Y11, Y11   \
	VMULPS       Y12, Y8, Y8   \
	VMULPS       Y12, Y9, Y9   \
	VMULPS       Y12, Y10, Y10 \
	VMULPS       Y12, Y11, Y11

// func gemv1x4Int8AVX2(blocks int, x *float32, codes *uint32, wstride int, scales *float32, sstride, rows int, y *float32)
//
// gemv1x4F32AVX2 for int8 codes; R10, R12: the group's first row of codes and scales at the current block.
TEXT ·gemv1x4Int8AVX2(SB), NOSPLIT, $0-64
	GEMV1_ARGS(rows+48(FP), y+56(FP))
	GEMV1_QARGS

i81row:
	GEMV_ZERO
	XORQ AX, AX
	MOVQ DI, R10
	MOVQ R14, R12

i81loop:
	GEMV_DEQ8ROW((R10), 8(R10), 16(R10), 24(R10), (R12))
	GEMV_FMA1(Y0, Y1)
	GEMV_DEQ8ROW((R10)(R8*1), 8(R10)(R8*1), 16(R10)(R8*1), 24(R10)(R8*1), (R12)(R9*1))
	GEMV_FMA1(Y2, Y3)
	GEMV_DEQ8ROW((R10)(R8*2), 8(R10)(R8*2), 16(R10)(R8*2), 24(R10)(R8*2), (R12)(R9*2))
	GEMV_FMA1(Y4, Y5)
	GEMV_DEQ8ROW((R10)(R13*1), 8(R10)(R13*1), 16(R10)(R13*1), 24(R10)(R13*1), (R12)(BX*1))
	GEMV_FMA1(Y6, Y7)
	ADDQ $32, R10
	ADDQ $4, R12
	ADDQ $128, AX
	CMPQ AX, CX
	JLT  i81loop

	GEMV_STORE4
	LEAQ (DI)(R8*4), DI
	LEAQ (R14)(R9*4), R14
	ADDQ $16, DX
	DECQ R11
	JNZ  i81row
	VZEROUPPER
	RET

// One row's block of 32 int4 codes (words at W0, W4, W8, W12) into Y8..Y11, dequantized with the scale
// at S (shifts in Y13).
#define GEMV_DEQ4ROW(W0, W4, W8, W12, S) \
	VBROADCASTSS S, Y12        \
	VPBROADCASTD W0, Y8        \
	VPBROADCASTD W4, Y9        \
	VPBROADCASTD W8, Y10       \
	VPBROADCASTD W12, Y11      \
	VPSLLVD      Y13, Y8, Y8   \
	VPSLLVD      Y13, Y9, Y9   \
	VPSLLVD      Y13, Y10, Y10 \
	VPSLLVD      Y13, Y11, Y11 \
	VPSRAD       $28, Y8, Y8   \
	VPSRAD       $28, Y9, Y9   \
	VPSRAD       $28, Y10, Y10 \
	VPSRAD       $28, Y11, Y11 \
	VCVTDQ2PS    Y8, Y8        \
	VCVTDQ2PS    Y9, Y9        \
	VCVTDQ2PS    Y10, Y10      \
	VCVTDQ2PS    Y11, Y11      \
	VMULPS       Y12, Y8, Y8   \
	VMULPS       Y12, Y9, Y9   \
	VMULPS       Y12, Y10, Y10 \
	VMULPS       Y12, Y11, Y11

// func gemv1x4Int4AVX2(blocks int, x *float32, codes *uint32, wstride int, scales *float32, sstride, rows int, y *float32)
//
// gemv1x4Int8AVX2 for int4 codes.
TEXT ·gemv1x4Int4AVX2(SB), NOSPLIT, $0-64
	GEMV1_ARGS(rows+48(FP), y+56(FP))
	GEMV1_QARGS
	VMOVDQU gemvShl4<>(SB), Y13

i41row:
	GEMV_ZERO
	XORQ AX, AX
	MOVQ DI, R10
	MOVQ R14, R12

i41loop:
	GEMV_DEQ4ROW((R10), 4(R10), 8(R10), 12(R10), (R12))
	GEMV_FMA1(Y0, Y1)
	GEMV_DEQ4ROW((R10)(R8*1), 4(R10)(R8*1), 8(R10)(R8*1), 12(R10)(R8*1), (R12)(R9*1))
	GEMV_FMA1(Y2, Y3)
	GEMV_DEQ4ROW((R10)(R8*2), 4(R10)(R8*2), 8(R10)(R8*2), 12(R10)(R8*2), (R12)(R9*2))
	GEMV_FMA1(Y4, Y5)
	GEMV_DEQ4ROW((R10)(R13*1), 4(R10)(R13*1), 8(R10)(R13*1), 12(R10)(R13*1), (R12)(BX*1))
	GEMV_FMA1(Y6, Y7)
	ADDQ $16, R10
	ADDQ $4, R12
	ADDQ $128, AX
	CMPQ AX, CX
	JLT  i41loop

	GEMV_STORE4
	LEAQ (DI)(R8*4), DI
	LEAQ (R14)(R9*4), R14
	ADDQ $16, DX
	DECQ R11
	JNZ  i41row
	VZEROUPPER
	RET
