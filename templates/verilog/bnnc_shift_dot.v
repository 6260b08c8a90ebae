// Hand-written bnnc primitive (multiplier-free designs): the dot product of N inputs with N
// weights given as signed power-of-two digits, sum_i x_i * w_i modulo 2^W_OUT, each product
// made of shifts and adds by bnnc_shift_add.
//   Inputs as in bnnc_dot: BIPOLAR = 1: 1-bit, 1 means +1 (MASKED = 1: {valid, bit}, 0 when not
//   valid); BIPOLAR = 0: W_IN-bit integers, two's complement when SIGNED. W_OUT > W_IN.
//   Weight i: bnnc_shift_add's m, TERMS digits of EXP_W + 2 bits, at w[i*TERMS*(EXP_W+2) +: ...].
// The products are summed as a balanced binary tree, a heap inside one always block (as in bnnc_dot).
module bnnc_shift_dot #(
    parameter N       = 2,
    parameter W_IN    = 1,
    parameter W_OUT   = 2,
    parameter BIPOLAR = 0,
    parameter MASKED  = 0,
    parameter SIGNED  = 0,
    parameter TERMS   = 1,
    parameter EXP_W   = 1
) (
    input  wire [N*W_IN-1:0]            x,
    input  wire [N*TERMS*(EXP_W+2)-1:0] w,
    output wire [W_OUT-1:0]             sum
);
    localparam WD = TERMS * (EXP_W + 2);  // bits of one weight
    localparam LEAVES = 1 << $clog2(N);

    wire [N*W_OUT-1:0] products;
    genvar i;
    generate
        for (i = 0; i < N; i = i + 1) begin : term
            wire [W_OUT-1:0] value;  // input i as a W_OUT-bit two's-complement number
            if (BIPOLAR != 0 && MASKED != 0) begin : masked
                assign value = x[i*W_IN + 1] ? {{(W_OUT-1){~x[i*W_IN]}}, 1'b1} : {W_OUT{1'b0}};
            end else if (BIPOLAR != 0) begin : bipolar
                assign value = {{(W_OUT-1){~x[i*W_IN]}}, 1'b1};
            end else if (SIGNED != 0) begin : signed_input
                assign value = {{(W_OUT-W_IN){x[i*W_IN + W_IN - 1]}}, x[i*W_IN +: W_IN]};
            end else begin : unsigned_input
                assign value = {{(W_OUT-W_IN){1'b0}}, x[i*W_IN +: W_IN]};
            end
            bnnc_shift_add #(.W(W_OUT), .TERMS(TERMS), .EXP_W(EXP_W)) product (
                .x(value), .m(w[i*WD +: WD]), .y(products[i*W_OUT +: W_OUT]));
        end
    endgenerate

    reg [W_OUT-1:0] node [1:2*LEAVES-1];  // node j = node 2j + node 2j+1; leaf i is node LEAVES+i
    integer j;
    always @* begin
        for (j = 0; j < LEAVES; j = j + 1)
            if (j < N)
                node[LEAVES + j] = products[j*W_OUT +: W_OUT];
            else
                node[LEAVES + j] = {W_OUT{1'b0}};
        for (j = LEAVES - 1; j >= 1; j = j - 1)
            node[j] = node[2*j] + node[2*j + 1];
    end
    assign sum = node[1];
endmodule
