// Hand-written bnnc primitive: the sum of N W-bit values, modulo 2^W, as a balanced tree of adders
// (a heap in one always block, like bnnc_dot's), so that its depth is log2(N) adders rather than N.
// A registered matrix-vector unit adds its lanes' part sums with it.
module bnnc_sum #(
    parameter N = 2,
    parameter W = 8
) (
    input  wire [N*W-1:0] x,
    output wire [W-1:0]   sum
);
    localparam LEAVES = 1 << $clog2(N);
    reg [W-1:0] node [1:2*LEAVES-1];  // node i = node 2i + node 2i+1; leaf j is node LEAVES+j
    integer i;
    always @* begin
        for (i = 0; i < LEAVES; i = i + 1)
            node[LEAVES + i] = i < N ? x[i*W +: W] : {W{1'b0}};
        for (i = LEAVES - 1; i >= 1; i = i - 1)
            node[i] = node[2*i] + node[2*i + 1];
    end
    assign sum = node[1];
endmodule
