//go:build amd64 && !purego

#include "textflag.h"

// The unpacking of qpacked panels (qpack.go): codes in panel order times their columns' scales, 16
// columns per k, one 32-k sub-block (one pair of scale vectors) at a time.

// func unpackInt4AVX2(subs int, codes *byte, scales *float32, panel *float32)
//
// 8 bytes per k: byte c is column c (low nibble) and column c+8 (high nibble), both signed.
TEXT ·unpackInt4AVX2(SB), NOSPLIT, $0-32
	MOVQ subs+0(FP), CX
	MOVQ codes+8(FP), SI
	MOVQ scales+16(FP), R9
	MOVQ panel+24(FP), DI
	TESTQ CX, CX
	JZ    done4

sub4:
	VMOVUPS (R9), Y14   // scales of columns 0..7
	VMOVUPS 32(R9), Y15 // columns 8..15
	ADDQ    $64, R9
	MOVQ    $32, DX

k4:
	VPMOVSXBD (SI), Y0      // the 8 bytes, each sign-extended
	VPSLLD    $28, Y0, Y1
	VPSRAD    $28, Y1, Y1   // low nibbles, signed: columns 0..7
	VPSRAD    $4, Y0, Y2    // high nibbles, signed: columns 8..15
	VCVTDQ2PS Y1, Y1
	VCVTDQ2PS Y2, Y2
	VMULPS    Y14, Y1, Y1
	VMULPS    Y15, Y2, Y2
	VMOVUPS   Y1, (DI)
	VMOVUPS   Y2, 32(DI)
	ADDQ      $8, SI
	ADDQ      $64, DI
	DECQ      DX
	JNZ       k4

	DECQ CX
	JNZ  sub4

done4:
	VZEROUPPER
	RET

// func unpackInt8AVX2(subs int, codes *byte, scales *float32, panel *float32)
//
// 16 bytes per k: byte c is column c, signed.
TEXT ·unpackInt8AVX2(SB), NOSPLIT, $0-32
	MOVQ subs+0(FP), CX
	MOVQ codes+8(FP), SI
	MOVQ scales+16(FP), R9
	MOVQ panel+24(FP), DI
	TESTQ CX, CX
	JZ    done8

sub8:
	VMOVUPS (R9), Y14
	VMOVUPS 32(R9), Y15
	ADDQ    $64, R9
	MOVQ    $32, DX

k8:
	VPMOVSXBD (SI), Y1
	VPMOVSXBD 8(SI), Y2
	VCVTDQ2PS Y1, Y1
	VCVTDQ2PS Y2, Y2
	VMULPS    Y14, Y1, Y1
	VMULPS    Y15, Y2, Y2
	VMOVUPS   Y1, (DI)
	VMOVUPS   Y2, 32(DI)
	ADDQ      $16, SI
	ADDQ      $64, DI
	DECQ      DX
	JNZ       k8

	DECQ CX
	JNZ  sub8

done8:
	VZEROUPPER
	RET
