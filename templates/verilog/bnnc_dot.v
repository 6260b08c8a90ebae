// Hand-written bnnc primitive: dot product of N inputs with N binary weights (1 means +1),
// summed as a balanced binary tree.
//   BIPOLAR = 1: 1-bit inputs (1 means +1); the sum is the popcount of XNOR(x, w), i.e. the
//                number of positions where input and weight agree (dot = 2 * sum - N).
//   MASKED  = 1 (with BIPOLAR = 1, W_IN = 2): inputs {valid, bit}; the sum is the popcount of
//                valid & XNOR(bit, w), so an invalid position (zero padding) adds nothing.
//   BIPOLAR = 0: W_IN-bit integers, two's complement when SIGNED; the sum is sum_i (w_i ? x_i : -x_i).
// The sum is W_OUT > W_IN bits wide and wraps modulo 2^W_OUT: callers size W_OUT so that it
// does not, or so that only the low bits matter. The tree is a heap inside one always block,
// balanced for any N without recursive modules, and simulators keep it a loop instead of
// unrolling it per term; synthesis trims the constant upper bits of the narrow subtrees.
module bnnc_dot #(
    parameter N       = 2,
    parameter W_IN    = 1,
    parameter W_OUT   = 2,
    parameter BIPOLAR = 1,
    parameter MASKED  = 0,
    parameter SIGNED  = 0
) (
    input  wire [N*W_IN-1:0] x,
    input  wire [N-1:0]      w,
    output wire [W_OUT-1:0]  sum
);
    localparam LEAVES = 1 << $clog2(N);

    reg [W_OUT-1:0] node [1:2*LEAVES-1];  // node i = node 2i + node 2i+1; leaf j is node LEAVES+j
    reg [W_OUT-1:0] value;
    integer i;
    always @* begin
        value = {W_OUT{1'b0}};
        for (i = 0; i < LEAVES; i = i + 1) begin
            if (i >= N)
                node[LEAVES + i] = {W_OUT{1'b0}};
            else if (BIPOLAR != 0 && MASKED != 0)
                node[LEAVES + i] = { {(W_OUT-1){1'b0}}, x[i*W_IN + 1] & ~(x[i*W_IN] ^ w[i]) };
            else if (BIPOLAR != 0)
                node[LEAVES + i] = { {(W_OUT-1){1'b0}}, ~(x[i*W_IN] ^ w[i]) };
            else begin
                value = { {(W_OUT-W_IN){SIGNED != 0 && x[i*W_IN + W_IN - 1]}}, x[i*W_IN +: W_IN] };
                node[LEAVES + i] = w[i] ? value : -value;
            end
        end
        for (i = LEAVES - 1; i >= 1; i = i - 1)
            node[i] = node[2*i] + node[2*i + 1];
    end
    assign sum = node[1];
endmodule
