// IEEE half-precision conversions in portable C, shared by the kernels and the weight packing.
#ifndef CONTEXTSTORE_HALF_H
#define CONTEXTSTORE_HALF_H

#include <string.h>

// The same rounding as F16C's _cvtss_sh with round-to-nearest-even, in portable C.
static inline unsigned short float_to_half(float value) {
    unsigned int bits;
    memcpy(&bits, &value, sizeof bits);
    unsigned int sign = (bits >> 16) & 0x8000, exponent = (bits >> 23) & 0xFF, mantissa = bits & 0x7FFFFF;
    if (exponent == 0xFF) return (unsigned short)(sign | 0x7C00 | (mantissa ? 0x200 : 0));  // inf, NaN
    int e = (int)exponent - 127 + 15;
    if (e >= 31) return (unsigned short)(sign | 0x7C00);  // too large: infinity
    if (e <= 0) {  // subnormal half, or zero
        if (e < -10) return (unsigned short)sign;
        mantissa |= 0x800000;
        unsigned int shift = (unsigned int)(14 - e);
        unsigned int half = mantissa >> shift, rest = mantissa & ((1u << shift) - 1), middle = 1u << (shift - 1);
        if (rest > middle || (rest == middle && (half & 1))) half++;
        return (unsigned short)(sign | half);
    }
    unsigned int half = ((unsigned int)e << 10) | (mantissa >> 13), rest = mantissa & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++;  // may carry into the exponent: fine
    return (unsigned short)(sign | half);
}

static inline float half_to_float(unsigned short h) {
    unsigned int sign = (unsigned int)(h >> 15) << 31, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF, bits;
    if (exponent == 0x1F) {
        bits = sign | 0x7F800000u | (mantissa << 13);  // infinity or NaN
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {  // subnormal: normalize
        exponent = 113;
        while (!(mantissa & 0x400)) {
            mantissa <<= 1;
            exponent--;
        }
        bits = sign | (exponent << 23) | ((mantissa & 0x3FF) << 13);
    }
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

#endif
