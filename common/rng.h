// numpy-compatible random numbers: MT19937 seeded exactly like numpy's legacy
// np.random.RandomState(seed), and the legacy algorithms on top of it, so that
// the same seed gives the same permutation/shuffle/draws as numpy 1.x.
#ifndef WSML_RNG_H
#define WSML_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t mt[624];
    int pos;
    int has_gauss; // cached second value of the legacy polar Gaussian
    double gauss;
} wsml_rng;

// RandomState(seed) for a 32-bit seed (init_genrand).
void wsml_rng_seed(wsml_rng *r, uint32_t seed);
uint32_t wsml_rng_u32(wsml_rng *r);
// random_sample(): 53-bit double in [0, 1).
double wsml_rng_double(wsml_rng *r);
// numpy's random_interval(max): uniform integer in [0, max], masked rejection.
uint64_t wsml_rng_interval(wsml_rng *r, uint64_t max);
// RandomState.shuffle(a) for a 1-D array of n elements of `size` bytes each.
void wsml_rng_shuffle(wsml_rng *r, void *a, size_t n, size_t size);
// RandomState.permutation(n) as int64.
void wsml_rng_permutation(wsml_rng *r, int64_t *out, size_t n);
// RandomState.randint(low, high) (high exclusive), default int64 dtype.
int64_t wsml_rng_randint(wsml_rng *r, int64_t low, int64_t high);
// RandomState.uniform(low, high).
double wsml_rng_uniform(wsml_rng *r, double low, double high);
// RandomState.standard_normal() (legacy polar method, caches the pair).
double wsml_rng_normal(wsml_rng *r);
// A state that can be saved in checkpoints: bytes of the struct (fixed layout).
#define WSML_RNG_STATE_BYTES sizeof(wsml_rng)

#endif
