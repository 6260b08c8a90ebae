// Hand-written bnnc primitive (multiplier-free designs): y = x * m modulo 2^W without a
// multiplier, from m's signed power-of-two digits: the sum of +-(x << exponent) over them.
//   m: TERMS digits of EXP_W + 2 bits, digit t at m[t*(EXP_W+2) +: EXP_W+2] = {nonzero, negative,
//      exponent}; a digit whose nonzero bit is clear adds nothing.
// With a constant m (one ROM entry, or a literal) each shift is wiring and each digit one adder;
// with m from a ROM the shifts are barrel shifters of EXP_W levels. x and y are W-bit patterns:
// two's complement or unsigned alike, as everything is modulo 2^W.
module bnnc_shift_add #(
    parameter W     = 8,
    parameter TERMS = 1,
    parameter EXP_W = 1
) (
    input  wire [W-1:0]               x,
    input  wire [TERMS*(EXP_W+2)-1:0] m,
    output wire [W-1:0]               y
);
    localparam DW = EXP_W + 2;  // bits of one digit

    reg [W-1:0] total;
    reg [W-1:0] shifted;
    integer t;
    always @* begin
        total = {W{1'b0}};
        shifted = {W{1'b0}};
        for (t = 0; t < TERMS; t = t + 1) begin
            shifted = x << m[t*DW +: EXP_W];
            if (m[t*DW + EXP_W + 1])
                total = m[t*DW + EXP_W] ? total - shifted : total + shifted;
        end
    end
    assign y = total;
endmodule
