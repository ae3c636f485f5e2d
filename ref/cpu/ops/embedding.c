/* embedding.c (template, see ops/real.h): VocabParallelEmbedding on one rank, a masked
 * lookup: tokens outside this rank's vocabulary shard give zero rows, so that summing
 * the ranks' outputs (the all-reduce) yields the full embedding. */

/* ids (T) -> out (T, H) from this rank's rows w (shard, H) = vocabulary [start, start+shard). */
void R(lr_ref_vocab_parallel_embedding)(real *out, const int64_t *ids, int64_t T, const real *w,
                                        int64_t start, int64_t shard, int64_t H) {
    for (int64_t t = 0; t < T; t++) {
        int64_t local = ids[t] - start;
        if (local >= 0 && local < shard)
            memcpy(out + t * H, w + local * H, (size_t)H * sizeof(real));
        else
            memset(out + t * H, 0, (size_t)H * sizeof(real));
    }
}
