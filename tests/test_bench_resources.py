"""bench/triton_resources.py: the parts that need no compiler (the listing's spills in row loops, the
choice of the decode-step launches); the tool itself compiles for sm_90 (bench/results/)."""

from __future__ import annotations

from bench import triton_resources


def test_spills_counted_inside_row_loops_only() -> None:
    """Local loads and stores count inside the innermost loops that load from global memory: not in
    the outer loop's own code, not in a loop over shared memory, not outside the loops."""
    sass = """
        /*0000*/                   STL [R1], R2 ;
        /*0010*/                   MOV R3, RZ ;
        /*0020*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
        /*0030*/                   STL [R1+0x4], R4 ;
        /*0040*/                   LDL R5, [R1+0x4] ;
        /*0050*/               @P0 BRA 0x20 ;
        /*0060*/                   STL [R1+0x8], R5 ;
        /*0070*/                   LDS R6, [R7] ;
        /*0080*/                   LDL R8, [R1+0x8] ;
        /*0090*/               @P1 BRA 0x70 ;
        /*00a0*/               @P2 BRA 0x10 ;
        /*00b0*/                   EXIT ;
    """
    assert triton_resources.spill_ops_in_row_loops(sass) == 2
    assert triton_resources.spill_ops_in_row_loops("/*0000*/ EXIT ;") == 0


def test_decode_step_launches() -> None:
    """One launch per decode-step variant of each row kernel: bfloat16 rows; the chain's tile
    variants (a top-k's, a top-p's) without min_tokens_to_keep; other kernels and dtypes left out."""
    def launch(kernel: str, dtype: str = "bfloat16", **constants: object) -> dict:
        args = {"x_ptr": ["tensor", dtype], **{k: ["bool" if isinstance(v, bool) else "int", v]
                                               for k, v in constants.items()}}
        return {"kernel": kernel, "module": "m", "args": args, "options": {}}

    launches = [
        launch("_filter_chain_kernel", TILE=True, MIN_KEEP_GT1=False, SPLIT=False, PTILE=True),
        launch("_filter_chain_kernel", TILE=True, MIN_KEEP_GT1=False, SPLIT=False, PTILE=True),  # same variant
        launch("_filter_chain_kernel", TILE=True, MIN_KEEP_GT1=True, SPLIT=False, PTILE=True),
        launch("_filter_chain_kernel", TILE=False, MIN_KEEP_GT1=False, SPLIT=False, PTILE=False),
        launch("_filter_chain_kernel", TILE=True, MIN_KEEP_GT1=False, SPLIT=True, PTILE=False),
        launch("_filter_chain_kernel", "float32", TILE=True, MIN_KEEP_GT1=False, SPLIT=False, PTILE=True),
        launch("_filter_chain_kernel", TILE=False, MIN_KEEP_GT1=False, SPLIT=False, PTILE=True),  # top-p only
        launch("_beam_split_kernel", PASS=0),
        launch("_beam_split_kernel", PASS=1),
        launch("_temperature_kernel"),
    ]
    chosen = triton_resources.decode_step_launches(launches)
    assert [launches.index(c) for c in chosen] == [0, 4, 6, 7, 8]
