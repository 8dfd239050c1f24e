//go:build amd64 && !purego

#include "textflag.h"

// Offsets of the broadcast constants in siluTab (fastmath_amd64.go), 8 float32 lanes each.
#define T_SIGN 0
#define T_ABS 32
#define T_M104 64
#define T_LOG2E 96
#define T_ROUND 128
#define T_LN2HI 160
#define T_LN2LO 192
#define T_C7 224
#define T_C6 256
#define T_C5 288
#define T_C4 320
#define T_C3 352
#define T_C2 384
#define T_ONE 416
#define T_BIAS 448
#define T_2M64 480
#define T_S2PI 512
#define T_KAPPA 544
#define T_RSQRT2 576
#define T_TWO 608
#define T_SPLIT 640
#define T_P0 672
#define T_P1 704
#define T_P2 736
#define T_P3 768
#define T_P4 800
#define T_P5 832
#define T_R0 864
#define T_R1 896
#define T_R2 928
#define T_R3 960
#define T_R4 992
#define T_R5 1024
#define T_R6 1056
#define T_R7 1088

// EXPF: Y5 = expf(Y1) for the 8 lanes of Y1, as expf (attention.go) computes it: n = round(x*log2e),
// the Cody-Waite reduction, the degree-7 polynomial, scaled as p * 2^(n+64) * 2^-64, and 0 below -104.
// Clobbers Y2-Y5; R11 holds the constants table.
#define EXPF \
	VCMPPS  $1, T_M104(R11), Y1, Y2   \
	VMULPS  T_LOG2E(R11), Y1, Y3      \
	VADDPS  T_ROUND(R11), Y3, Y3      \
	VSUBPS  T_ROUND(R11), Y3, Y3      \
	VMULPS  T_LN2HI(R11), Y3, Y4      \
	VSUBPS  Y4, Y1, Y4                \
	VMULPS  T_LN2LO(R11), Y3, Y5      \
	VSUBPS  Y5, Y4, Y4                \
	VMULPS  T_C7(R11), Y4, Y5         \
	VADDPS  T_C6(R11), Y5, Y5         \
	VMULPS  Y4, Y5, Y5                \
	VADDPS  T_C5(R11), Y5, Y5         \
	VMULPS  Y4, Y5, Y5                \
	VADDPS  T_C4(R11), Y5, Y5         \
	VMULPS  Y4, Y5, Y5                \
	VADDPS  T_C3(R11), Y5, Y5         \
	VMULPS  Y4, Y5, Y5                \
	VADDPS  T_C2(R11), Y5, Y5         \
	VMULPS  Y4, Y5, Y5                \
	VADDPS  T_ONE(R11), Y5, Y5        \
	VMULPS  Y4, Y5, Y5                \
	VADDPS  T_ONE(R11), Y5, Y5        \
	VCVTTPS2DQ Y3, Y3                 \
	VPADDD  T_BIAS(R11), Y3, Y3       \
	VPSLLD  $23, Y3, Y3               \
	VMULPS  Y3, Y5, Y5                \
	VMULPS  T_2M64(R11), Y5, Y5       \
	VANDNPS Y5, Y2, Y5

// func siluAffineAVX2(blocks int, in, out *float32, mean, scale, shift float32, tab *[siluTabLen][8]uint32)
//
// out[i] = siLUFast((in[i]-mean)*scale + shift) for 8*blocks values, 8 at a time, with the operations of
// groupNormFast, siLUFast and expf in the same order and rounding (no fused multiply-adds), so that the
// results are those of the Go code: v = (in - mean)*scale + shift; x = -|v|; expf(x) by
// n = round(x*log2e), the Cody-Waite reduction and the degree-7 polynomial, scaled as p * 2^(n+64) * 2^-64
// (exact where expf scales once, the same rounding where it takes its subnormal branch) and 0 below -104;
// then v/(1+e) for v >= 0 and v*e/(1+e) below.
TEXT ·siluAffineAVX2(SB), NOSPLIT, $0-48
	MOVQ         blocks+0(FP), CX
	MOVQ         in+8(FP), SI
	MOVQ         out+16(FP), DI
	VBROADCASTSS mean+24(FP), Y10
	VBROADCASTSS scale+28(FP), Y8
	VBROADCASTSS shift+32(FP), Y9
	MOVQ         tab+40(FP), R11
	VXORPS       Y12, Y12, Y12
	TESTQ        CX, CX
	JZ           done

loop:
	VMOVUPS (SI), Y0
	VSUBPS  Y10, Y0, Y0               // in - mean
	VMULPS  Y8, Y0, Y0
	VADDPS  Y9, Y0, Y0                // v
	VANDPS  T_ABS(R11), Y0, Y1
	VXORPS  T_SIGN(R11), Y1, Y1       // x = -|v|
	EXPF                              // e
	VADDPS  T_ONE(R11), Y5, Y6        // 1 + e
	VMULPS  Y5, Y0, Y7                // v*e
	VCMPPS  $13, Y12, Y0, Y2          // v >= 0
	VBLENDVPS Y2, Y0, Y7, Y7          // v where v >= 0, else v*e
	VDIVPS  Y6, Y7, Y7
	VMOVUPS Y7, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET

// func geluTanhAVX2(blocks int, in, out *float32, tab *[siluTabLen][8]uint32)
//
// out[i] = geluFast(in[i]) for 8*blocks values, with geluFast's and expf's operations in the same order
// and rounding (no fused multiply-adds): u = s2pi*(x + ((kappa*x)*x)*x); e = expf(-2|u|); x/(1+e) for
// u >= 0 and x*e/(1+e) below (NaN included, as in the Go code).
TEXT ·geluTanhAVX2(SB), NOSPLIT, $0-32
	MOVQ   blocks+0(FP), CX
	MOVQ   in+8(FP), SI
	MOVQ   out+16(FP), DI
	MOVQ   tab+24(FP), R11
	VXORPS Y12, Y12, Y12
	TESTQ  CX, CX
	JZ     gdone

gloop:
	VMOVUPS (SI), Y0                  // x
	VMULPS  T_KAPPA(R11), Y0, Y1
	VMULPS  Y0, Y1, Y1
	VMULPS  Y0, Y1, Y1                // kappa*x*x*x
	VADDPS  Y1, Y0, Y1
	VMULPS  T_S2PI(R11), Y1, Y13      // u
	VANDPS  T_ABS(R11), Y13, Y1
	VADDPS  Y1, Y1, Y1
	VXORPS  T_SIGN(R11), Y1, Y1       // -2|u|
	EXPF
	VADDPS  T_ONE(R11), Y5, Y6        // 1 + e
	VMULPS  Y5, Y0, Y7                // x*e
	VCMPPS  $13, Y12, Y13, Y2         // u >= 0
	VBLENDVPS Y2, Y0, Y7, Y7
	VDIVPS  Y6, Y7, Y7
	VMOVUPS Y7, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     gloop

gdone:
	VZEROUPPER
	RET

// func expShiftAVX2(blocks int, in, out *float32, shift float32, tab *[siluTabLen][8]uint32)
//
// out[i] = expf(in[i] - shift) for 8*blocks values (softmaxFast's exponentials; in may equal out).
TEXT ·expShiftAVX2(SB), NOSPLIT, $0-40
	MOVQ         blocks+0(FP), CX
	MOVQ         in+8(FP), SI
	MOVQ         out+16(FP), DI
	VBROADCASTSS shift+24(FP), Y10
	MOVQ         tab+32(FP), R11
	TESTQ        CX, CX
	JZ           edone

eloop:
	VMOVUPS (SI), Y1
	VSUBPS  Y10, Y1, Y1
	EXPF
	VMOVUPS Y5, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     eloop

edone:
	VZEROUPPER
	RET

// func geluErfAVX2(blocks int, in, out *float32, tab *[siluTabLen][8]uint32)
//
// out[i] = geluErfFast(in[i]) for 8*blocks values, both of its pieces computed and the right one kept,
// with the Go code's operations in the same order and rounding (no fused multiply-adds): z = x/sqrt(2),
// a = |z|; erfSmall(z) = z*P(z*z); erfcLarge(a) = (expf(-(a*a)) * t) * R(t) with t = 2/(2+a); then
// (0.5*x) * (1 + erfSmall) for a < erfSplit, (0.5*x) * (2 - erfc) for z > 0, (0.5*x) * erfc below (and
// NaN, which every piece carries).
TEXT ·geluErfAVX2(SB), NOSPLIT, $0-32
	MOVQ    blocks+0(FP), CX
	MOVQ    in+8(FP), SI
	MOVQ    out+16(FP), DI
	MOVQ    tab+24(FP), R11
	VXORPS  Y12, Y12, Y12
	VMOVUPS T_TWO(R11), Y14
	TESTQ   CX, CX
	JZ      edone2

eloop2:
	VMOVUPS (SI), Y0                  // x
	VMULPS  T_RSQRT2(R11), Y0, Y13    // z
	VANDPS  T_ABS(R11), Y13, Y8       // a = |z|
	// erfSmall(z), then 1 + it
	VMULPS  Y13, Y13, Y9              // s
	VMULPS  T_P5(R11), Y9, Y10
	VADDPS  T_P4(R11), Y10, Y10
	VMULPS  Y9, Y10, Y10
	VADDPS  T_P3(R11), Y10, Y10
	VMULPS  Y9, Y10, Y10
	VADDPS  T_P2(R11), Y10, Y10
	VMULPS  Y9, Y10, Y10
	VADDPS  T_P1(R11), Y10, Y10
	VMULPS  Y9, Y10, Y10
	VADDPS  T_P0(R11), Y10, Y10
	VMULPS  Y10, Y13, Y10
	VADDPS  T_ONE(R11), Y10, Y10
	// erfcLarge(a)
	VADDPS  Y14, Y8, Y11
	VDIVPS  Y11, Y14, Y11             // t = 2/(2+a)
	VMULPS  Y8, Y8, Y1
	VXORPS  T_SIGN(R11), Y1, Y1       // -(a*a)
	EXPF
	VMULPS  Y11, Y5, Y5               // expf * t
	VMULPS  T_R7(R11), Y11, Y6
	VADDPS  T_R6(R11), Y6, Y6
	VMULPS  Y11, Y6, Y6
	VADDPS  T_R5(R11), Y6, Y6
	VMULPS  Y11, Y6, Y6
	VADDPS  T_R4(R11), Y6, Y6
	VMULPS  Y11, Y6, Y6
	VADDPS  T_R3(R11), Y6, Y6
	VMULPS  Y11, Y6, Y6
	VADDPS  T_R2(R11), Y6, Y6
	VMULPS  Y11, Y6, Y6
	VADDPS  T_R1(R11), Y6, Y6
	VMULPS  Y11, Y6, Y6
	VADDPS  T_R0(R11), Y6, Y6
	VMULPS  Y6, Y5, Y5                // erfc
	// the factor of 0.5*x
	VSUBPS  Y5, Y14, Y7               // 2 - erfc
	VCMPPS  $14, Y12, Y13, Y2         // z > 0
	VBLENDVPS Y2, Y7, Y5, Y7
	VCMPPS  $1, T_SPLIT(R11), Y8, Y3  // a < erfSplit
	VBLENDVPS Y3, Y10, Y7, Y7
	VMULPS  T_C2(R11), Y0, Y0         // 0.5*x
	VMULPS  Y7, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     eloop2

edone2:
	VZEROUPPER
	RET
