// Hand-written bnnc primitive: dot product of N inputs with N binary weights (1 means +1).
//   BIPOLAR = 1: 1-bit inputs (1 means +1); the sum is the popcount of XNOR(x, w), i.e. the
//                number of positions where input and weight agree (dot = 2 * sum - N).
//   MASKED  = 1 (with BIPOLAR = 1, W_IN = 2): inputs {valid, bit}; the sum is the popcount of
//                valid & XNOR(bit, w), so an invalid position (zero padding) adds nothing.
//   BIPOLAR = 0: W_IN-bit integers, two's complement when SIGNED; the sum is sum_i (w_i ? x_i : -x_i).
// The sum is W_OUT > W_IN bits wide and wraps modulo 2^W_OUT: callers size W_OUT so that it
// does not, or so that only the low bits matter.
//
// Structure: 1-bit terms are first counted in groups (a small count per group), then the
// counts are summed as a balanced binary tree, so synthesis maps the groups to LUTs and the wider
// sums above to carry chains. The group suits the target's LUTs, named by the define
// BNNC_LUT_INPUTS (6 unless defined; `bnnc report --fpga` defines 4 for ECP5 and iCE40):
// - 6-input LUTs: six terms (a 3-bit count, one 6-input LUT per bit with constant weights).
//   Yosys' synth_xilinx on a 256-input popcount with constant weights: 403 LUTs + 67 CARRY4,
//   against 668 LUTs + 214 MUXF7/8 for a tree of pairs from the leaves; on a 32-input lane with
//   variable weights: 52 LUTs + 10 CARRY4 against 114 LUTs + 37 MUXF7/8.
// - 4-input LUTs: three terms when the weights vary (CONST_W = 0), six when they are constants.
//   With variable weights a group of six is a function of 12 inputs, which LUT4s build badly:
//   Yosys 0.70's synth_ecp5 on a registered unit's part of 12 terms takes 71 LUT4 in groups of
//   six, 32 (28 LUT4 + 2 CCU2C) in groups of three (synth_xilinx: 15 LUTs against 21). With
//   constant weights the groups of three only add adders: the digits CNV's layer 1 (one step,
//   144 inputs x 32 channels) took 10,948 LUT4s and carry halves in groups of six, 11,132 in three.
// Integer terms are W_IN bits wide already and go into the tree one per leaf, as W_IN-bit
// unsigned numbers u (x itself, or x + 2^(W_IN-1) when SIGNED: its sign bit flipped): u for
// weight +1, ~u = 2^W_IN - 1 - u for weight -1. The constants this leaves out, a function of the
// weights alone, are added once at the root -- with TABLE (a registered unit's parts of two terms,
// where those adders were the critical path) they are one more leaf instead -- so the leaves need
// no negation adders and the tree only as many bits as its values:
// a 56-term lane of u8 inputs with variable weights and a 19-bit sum takes 1,051 LUTs instead of
// 2,263 when each leaf was w ? x : -x at full width.
// W_W > 1: multi-bit weights, W_W-bit two's complement at w[i*W_W +: W_W]; the sum is the dot
// product sum_i x_i * w_i itself (also for BIPOLAR inputs, x_i = +-1, and MASKED ones, 0 when
// invalid). Each term is a (W_IN+1) x W_W-bit product (a few LUTs at these widths), one per leaf.
// The tree is a heap inside one always block, balanced for any N without recursive modules,
// and simulators keep it a loop instead of unrolling it per term; synthesis trims the constant
// upper bits of the narrow subtrees.
`ifndef BNNC_LUT_INPUTS
`define BNNC_LUT_INPUTS 6
`endif
module bnnc_dot #(
    parameter N       = 2,
    parameter W_IN    = 1,
    parameter W_OUT   = 2,
    parameter BIPOLAR = 1,
    parameter MASKED  = 0,
    parameter SIGNED  = 0,
    parameter W_W     = 1,
    parameter TABLE   = 0,  // 1: up to 4 integer terms take their correction from a table (below)
    parameter CONST_W = 0   // 1: w is a constant (sizes the groups of 1-bit terms for 4-input LUTs)
) (
    input  wire [N*W_IN-1:0] x,
    input  wire [N*W_W-1:0]  w,
    output wire [W_OUT-1:0]  sum
);
    localparam GROUP  = BIPOLAR == 0 || W_W != 1 ? 1 : `BNNC_LUT_INPUTS >= 6 || CONST_W != 0 ? 6 : 3;
    localparam INT_TERMS = BIPOLAR == 0 && W_W == 1;  // integer terms, +-x
    // the leaves in use: groups of terms, and for integer terms their constant correction
    localparam LEAF   = INT_TERMS && TABLE != 0;  // the correction is a leaf (else added after the root)
    localparam COUNT  = LEAF ? N + 1 : (N + GROUP - 1) / GROUP;
    localparam LEAVES = 1 << $clog2(COUNT);
    localparam COUNT_W = W_OUT < 3 ? W_OUT : 3;  // a group's count (at most 6), modulo 2^W_OUT like the sum

    // TABLE, up to 4 integer terms (a registered unit's parts): the correction is a table of the
    // weights' patterns, LUTs beside the leaves rather than a carry chain in series with the tree
    // (the registered digits CNV's critical path ran through that chain). Only there: with
    // constant weights (channel reuse) Debian's Yosys 0.23 and its ABC did not finish the table.
    localparam SMALL = INT_TERMS && TABLE != 0 && N <= 4;
    localparam TW = SMALL ? N : 1;  // weights the table reads
    function [W_OUT-1:0] correction_of(input [TW-1:0] pattern);
        reg [W_OUT-1:0] neg, count;
        integer b;
        begin
            neg = {W_OUT{1'b0}};
            count = {W_OUT{1'b0}};
            for (b = 0; b < TW; b = b + 1) begin
                neg = neg + { {(W_OUT-1){1'b0}}, ~pattern[b] };
                count = count + { {(W_OUT-1){1'b0}}, 1'b1 };
            end
            correction_of = SIGNED != 0 ? neg - (count << (W_IN - 1)) : neg - (neg << W_IN);
        end
    endfunction

    reg [W_OUT-1:0] node [1:2*LEAVES-1];  // node i = node 2i + node 2i+1; leaf j is node LEAVES+j
    reg [W_IN-1:0]  value;    // an integer term as unsigned (offset binary when SIGNED)
    reg [W_OUT-1:0] agree;    // a group's 1-bit terms that are 1, in its low COUNT_W bits
    reg [W_OUT-1:0] negated;  // integer terms of weight -1: each leaf ~u leaves out 1 - 2^W_IN
    reg [W_OUT-1:0] terms;    // N as a W_OUT-bit value. SIGNED: w*x = w*u - w*2^(W_IN-1), which with
                              // the -1 terms' 1 - 2^W_IN leaves out negated - N*2^(W_IN-1) in all
    reg [W_OUT-1:0] total;
    reg [W_OUT-1:0] small_correction;
    localparam XW = W_IN + 1;   // W_W > 1: an input value, two's complement
    localparam PW = XW + W_W;   // a product
    reg [XW-1:0] xv;
    reg [W_W-1:0] wv;
    reg [PW-1:0] product;
    // the product sign-extended past W_OUT, whatever the two widths; its top bits are not needed
    reg [PW+W_OUT-1:0] product_ext_unused_top;
    integer i, j;
    always @* begin
        value = {W_IN{1'b0}};
        terms = {W_OUT{1'b0}};
        agree = {W_OUT{1'b0}};
        negated = {W_OUT{1'b0}};
        xv = {XW{1'b0}};
        wv = {W_W{1'b0}};
        product = {PW{1'b0}};
        product_ext_unused_top = {(PW+W_OUT){1'b0}};
        small_correction = {W_OUT{1'b0}};
        if (SMALL)
            for (i = 0; i < (1 << TW); i = i + 1)
                if (w[TW-1:0] == i[TW-1:0])
                    small_correction = correction_of(i[TW-1:0]);
        if (INT_TERMS && !SMALL)
            for (i = 0; i < N; i = i + 1) begin
                negated = negated + { {(W_OUT-1){1'b0}}, ~w[i] };
                terms = terms + { {(W_OUT-1){1'b0}}, 1'b1 };
            end
        for (i = 0; i < LEAVES; i = i + 1) begin
            if (W_W > 1) begin
                if (i < N) begin
                    if (BIPOLAR != 0 && MASKED != 0)  // {valid, bit}: +-1 inside the map, else 0
                        xv = {{(XW-1){x[i*W_IN + 1] & ~x[i*W_IN]}}, x[i*W_IN + 1]};
                    else if (BIPOLAR != 0)
                        xv = {{(XW-1){~x[i*W_IN]}}, 1'b1};
                    else if (SIGNED != 0)
                        xv = {x[i*W_IN + W_IN - 1], x[i*W_IN +: W_IN]};
                    else
                        xv = {1'b0, x[i*W_IN +: W_IN]};
                    wv = w[i*W_W +: W_W];
                    // unsigned product of the PW-bit two's-complement patterns: exact modulo 2^PW,
                    // where the signed product fits
                    product = {{W_W{xv[XW-1]}}, xv} * {{XW{wv[W_W-1]}}, wv};
                    product_ext_unused_top = {{W_OUT{product[PW-1]}}, product};
                    node[LEAVES + i] = product_ext_unused_top[W_OUT-1:0];
                end else
                    node[LEAVES + i] = {W_OUT{1'b0}};
            end else if (BIPOLAR != 0) begin
                agree = {W_OUT{1'b0}};
                for (j = i * GROUP; j < i * GROUP + GROUP; j = j + 1)
                    if (j < N && MASKED != 0)
                        agree[COUNT_W-1:0] = agree[COUNT_W-1:0] + { {(COUNT_W-1){1'b0}}, x[j*W_IN + 1] & ~(x[j*W_IN] ^ w[j]) };
                    else if (j < N)
                        agree[COUNT_W-1:0] = agree[COUNT_W-1:0] + { {(COUNT_W-1){1'b0}}, ~(x[j*W_IN] ^ w[j]) };
                node[LEAVES + i] = agree;
            end else if (i < N) begin
                value = x[i*W_IN +: W_IN];
                if (SIGNED != 0)
                    value[W_IN-1] = ~value[W_IN-1];
                node[LEAVES + i] = { {(W_OUT-W_IN){1'b0}}, value ^ {W_IN{~w[i]}} };
            end else if (i == N && LEAF)  // the constants the leaves leave out, from the weights alone
                node[LEAVES + i] = SMALL ? small_correction
                                 : SIGNED != 0 ? negated - (terms << (W_IN - 1)) : negated - (negated << W_IN);
            else
                node[LEAVES + i] = {W_OUT{1'b0}};
        end
        for (i = LEAVES - 1; i >= 1; i = i - 1)
            node[i] = node[2*i] + node[2*i + 1];
        if (!INT_TERMS || LEAF)
            total = node[1];
        else if (SIGNED != 0)
            total = node[1] + negated - (terms << (W_IN - 1));
        else
            total = node[1] + negated - (negated << W_IN);
    end
    assign sum = total;
endmodule
